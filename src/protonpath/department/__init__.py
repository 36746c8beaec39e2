"""The department: team directory, opening hours, validated indications, review meetings, activity.

- ``triage.py`` (pure) matches a request's pathology and location to the catalogue of validated
  indications (``data/indications.json``, from seed 000), adult or paediatric by age.
- ``services.py`` plans review meetings, puts complete files on their agenda (they enter review)
  and records the oncologists' decisions through the referrals path.
- ``selectors.py`` reads: directory, opening hours (``opening_periods_on`` for bookings), triage
  explained in the reader's language, meetings, activity figures.
- ``pdf.py`` renders a meeting's minutes; ``charts.py`` draws the activity charts.
"""
