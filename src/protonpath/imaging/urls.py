from django.urls import path

from protonpath.imaging import views

app_name = "imaging"
urlpatterns = [
    path("requests/<int:pk>/upload/", views.upload, name="upload"),
    path("requests/<int:pk>/recheck/", views.recheck, name="recheck"),
    path("series/<int:pk>/", views.series_viewer, name="viewer"),
    path("series/<int:pk>/slices.json", views.series_slices, name="series_slices"),
    path("series/<int:pk>/contours.json", views.series_contours, name="series_contours"),
    path("instances/<int:pk>.png", views.instance_png, name="instance_png"),
    path("studies/<int:pk>/export/", views.study_export, name="export"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/<int:pk>/match/", views.inbox_match, name="match"),
]
