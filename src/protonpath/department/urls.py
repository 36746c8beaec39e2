from django.urls import path

from protonpath.department import views

app_name = "department"
urlpatterns = [
    path("", views.about, name="about"),
    path("manage/", views.manage, name="manage"),
    path("meetings/", views.meeting_list, name="meetings"),
    path("meetings/<int:pk>/", views.meeting_detail, name="meeting"),
    path("meetings/<int:pk>/edit/", views.meeting_edit, name="meeting_edit"),
    path("meetings/<int:pk>/held/", views.meeting_held, name="meeting_held"),
    path("meetings/<int:pk>/minutes.pdf", views.minutes_pdf, name="minutes"),
    path("agenda/add/", views.agenda_add, name="agenda_add"),
    path("agenda/<int:item_pk>/remove/", views.agenda_remove, name="agenda_remove"),
    path("agenda/<int:item_pk>/decision/", views.agenda_decide, name="agenda_decide"),
    path("activity/", views.activity, name="activity"),
]
