"""Date and time formats of the "en" locale, as the console shows them everywhere: 24-hour,
ISO dates, the time zone named. Django prefers a locale's formats to the settings of the
same name, so these repeat settings.DATETIME_FORMAT and friends for the admin's locale."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
