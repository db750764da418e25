"""Coverage-guided fuzz targets (atheris): the NTP reply validator against an independent reference,
and the server-address parser. Run: `python -m fuzz reply --runs 1000000` (see __main__)."""
