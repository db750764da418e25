"""The outputs: each renders the one `Assessment` (or the stored samples) for one audience.

`check` (monitoring plugins), `metrics` (Prometheus), `report` (plots and summary), `export_csv`,
`drift_report`/`timeout_report` (`timekit analyze`), `render` (the CLI's tables and text).
"""
