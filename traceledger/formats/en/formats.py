"""English (``en``, also ``en-us``) formats; anything not set here is Django's own.

https://docs.djangoproject.com/en/5.2/topics/i18n/formatting/#creating-custom-format-files
The date drill-down's ``YEAR_MONTH_FORMAT`` ("March 2026") and ``MONTH_DAY_FORMAT``
("March 5") stay Django's.
"""

# ISO 8601 date and 24-hour time to the second, then the time zone's name (T: "UTC").
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"
