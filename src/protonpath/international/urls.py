from django.urls import path

from protonpath.international import views

app_name = "international"
urlpatterns = [
    path("tariffs/", views.tariffs, name="tariffs"),
    path("department-details/", views.department_details, name="department_details"),
    path("requests/<int:pk>/quote/new/", views.quote_new, name="quote_new"),
    path("requests/<int:pk>/full-payment/", views.full_payment, name="full_payment"),
    path("requests/<int:pk>/travellers/", views.travellers, name="travellers"),
    path("requests/<int:pk>/letters/patient.pdf", views.attestation, name="attestation"),
    path("quotes/<int:pk>/", views.quote_detail, name="quote"),
    path("quotes/<int:pk>/send/", views.quote_send, name="quote_send"),
    path("quotes/<int:pk>/accept/", views.quote_accept, name="quote_accept"),
    path("quotes/<int:pk>/refuse/", views.quote_refuse, name="quote_refuse"),
    path("quotes/<int:pk>/quote.pdf", views.quote_pdf, name="quote_pdf"),
    path("quotes/<int:pk>/payments/", views.payments, name="payments"),
    path("companions/<int:pk>/delete/", views.companion_delete, name="companion_delete"),
    path("companions/<int:pk>/letter.pdf", views.companion_letter, name="companion_letter"),
    path("stays/<int:pk>/delete/", views.stay_delete, name="stay_delete"),
    path("letters/<int:pk>.pdf", views.issued_letter, name="issued_letter"),
]
