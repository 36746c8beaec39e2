"""The section this app adds to a request's page: quote, payments, visa assessment, letters."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext as _

from protonpath.international import pdf, selectors
from protonpath.international.models import IssuedLetter
from protonpath.international.rules.letters import LetterKind
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals.models import State


def request_panels(request, treatment_request) -> list[dict]:
    user = request.user
    r = treatment_request
    if not r.is_international or not selectors.may_see_quotes(user, r):
        return []
    quote = selectors.quotes_for(user, r).exclude(status="superseded").first()
    companions = list(r.companions.all())
    letters = []
    try:
        for letter in pdf.letters_for(r):
            if letter.kind == LetterKind.PATIENT_ATTESTATION:
                letters.append({"label": _("Attestation for the patient"), "url": reverse("international:attestation", args=[r.pk])})
            else:
                person = next((c for c in companions if str(c.pk) == letter.traveller_reference), None)
                if person is not None:
                    letters.append(
                        {
                            "label": _("Letter for %(name)s") % {"name": person.full_name},
                            "url": reverse("international:companion_letter", args=[person.pk]),
                        }
                    )
    except ValidationError as exc:
        letters = []
        # Paid, but something the letters need is missing: say what (not before payment).
        letters_error = " ".join(exc.messages) if exc.code in ("missing", "guardian") else ""
    else:
        letters_error = ""
    names = {str(c.pk): c.full_name for c in companions}
    issued = [
        {
            "label": _("Attestation for the patient") if row.traveller == "patient" else names.get(row.traveller, _("Accompanying person")),
            "row": row,
            "url": reverse("international:issued_letter", args=[row.pk]),
        }
        for row in IssuedLetter.objects.filter(treatment_request=r).defer("pdf").order_by("traveller", "-version", "language")
    ]
    context = {
        "quote": quote,
        "balance": selectors.quote_balance(quote) if quote is not None and quote.status == "accepted" else None,
        "can_manage": selectors.may_manage(user),
        "can_answer": quote is not None and quote.status == "sent" and r.state == State.QUOTE_SENT and referral_selectors.is_owner(user, r),
        "can_build": selectors.may_manage(user) and r.state == State.ACCEPTED,
        "assessment": selectors.visa_assessment(r),
        "companions": companions,
        "letters": letters,
        "letters_error": letters_error,
        "issued_letters": issued,
    }
    return [{"template": "international/_panel.html", "context": context}]
