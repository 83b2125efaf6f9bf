"""Predictive-maintenance alerts: rules turn readings and anomaly events into findings, the
alert book turns findings into a few de-duplicated alerts with a lifecycle, and notifications
go out by webhook and e-mail with escalation. ``python -m maintenance`` runs the faust app."""
