from django.urls import path

from protonpath.treatment import views

app_name = "treatment"
urlpatterns = [
    path("requests/<int:pk>/prescription/", views.prescription, name="prescription"),
    path("requests/<int:pk>/plans/new/", views.new_plan, name="new_plan"),
    path("plans/<int:pk>/", views.plan_page, name="plan"),
    path("plans/<int:pk>/progress/", views.plan_progress, name="progress"),
    path("plans/<int:pk>/slices/<int:index>.png", views.plan_slice, name="slice"),
    path("plans/<int:pk>/files.zip", views.plan_zip, name="zip"),
]
