from django.urls import path

from accounts.api.views import LoginView, RefreshView, UserCreateView

urlpatterns = [
    path("auth/login", LoginView.as_view(), name="auth-login"),
    path("auth/refresh", RefreshView.as_view(), name="auth-refresh"),
    path("users", UserCreateView.as_view(), name="user-create"),
]
