FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# A throwaway data folder: loading the settings in debug writes a development secret key
# there, which must neither stay in an image layer nor be left root-owned in /app/var (the
# volume the app runs on as another user is filled from it).
RUN DJANGO_DEBUG=1 TRACELEDGER_DATA_DIR=/tmp/collectstatic python manage.py collectstatic --noinput \
    && rm -rf /tmp/collectstatic
RUN useradd --create-home traceledger && mkdir -p /app/var && chown traceledger /app/var
USER traceledger
EXPOSE 8000
CMD ["gunicorn", "traceledger.wsgi:application"]
