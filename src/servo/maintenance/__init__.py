"""Keeping a Servo home healthy: ``servo doctor`` (check and repair) and ``servo gc``.

- `servo.maintenance.scopes`: the (tenant, workspace) scopes a home holds.
- `servo.maintenance.quarantine`: moving unreadable objects aside, never deleting them.
- `servo.maintenance.doctor`: the checks, as a report of findings.
- `servo.maintenance.repair`: quarantine, rebuild projections and catalog from the ledger.
- `servo.maintenance.gc` and `servo.storage.gc_records`: retention of stored values.
"""
