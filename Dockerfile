FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput
RUN useradd --create-home traceledger && mkdir -p /app/var && chown traceledger /app/var
USER traceledger
EXPOSE 8000
CMD ["gunicorn", "traceledger.wsgi:application"]
