"""Recipe templates (<component>.json), the shared Install script, and the validator build.py runs."""
