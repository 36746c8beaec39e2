from django.urls import path

from protonpath.referrals import views

app_name = "referrals"
urlpatterns = [
    path("", views.request_list, name="list"),
    path("queues/", views.queues, name="queues"),
    path("new/", views.request_new, name="new"),
    path("patients/duplicates/", views.patient_duplicates, name="duplicates"),
    path("patients/merge/<int:keep>/<int:remove>/", views.patient_merge, name="merge"),
    path("<int:pk>/", views.request_detail, name="detail"),
    path("<int:pk>/edit/", views.request_edit, name="edit"),
    path("<int:pk>/documents/", views.document_upload, name="upload"),
    path("<int:pk>/decide/", views.request_decide, name="decide"),
    path("<int:pk>/actions/<slug:action>/", views.request_action, name="action"),
    path("documents/<int:pk>/", views.document_download, name="document"),
    path("documents/<int:pk>/delete/", views.document_delete, name="document_delete"),
]
