from django.urls import path

from protonpath.department import views

app_name = "department"
urlpatterns = [
    path("", views.about, name="about"),
]
