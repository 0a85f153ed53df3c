"""dhr-workflow: deadlines, reminders and escalation for Domestic Homicide Review action plans."""

__version__ = "0.1.0"
