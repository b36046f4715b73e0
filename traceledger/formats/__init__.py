"""Date and time formats of the admin (``FORMAT_MODULE_PATH``), one module per language.

Django 5 always localizes, so ``settings.DATETIME_FORMAT`` is ignored wherever a locale
format exists: the formats have to come from a format module. An audit trail shows times to
the second with their time zone (``2026-11-24 22:14:05 UTC``), never "10:14 p.m.".
"""
