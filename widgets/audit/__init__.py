"""The auditor's read-only dashboard: ``AuditDashboard`` (``dashboard.audit_panel`` for the
notebook) and its tabs: integrity, event explorer, lineage, notebooks."""
