"""syncd: capture reps' mail and meetings onto CRM customers."""

__version__ = "0.1.0"
