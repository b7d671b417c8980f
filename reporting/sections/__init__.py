"""The report's sections, a module each: functions that write their blocks into the Report (document.py), put in
the order the report prints them by model.py."""
