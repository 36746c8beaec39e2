"""Pure rules for patients from abroad: no Django, no I/O.

Modules
-------
countries
    Nationality codes (ISO 3166-1 alpha-2 or alpha-3, via pycountry) resolved and validated.
stay
    Stay periods and the expected stay of a treatment course on French working days.
visa
    Visa regime by nationality (Regulation (EU) 2018/1806) and the Schengen 90/180-day rule.
quote
    Quote lines from a tariff, totals in EUR, estimate of the additional costs of the stay.
payment
    Balance of a quote from recorded payments and refunds.
letters
    The facts of the letters for the consulate (patient and accompanying persons).
loaders
    The only place that reads the data files (``importlib.resources``).
"""
