"""The IMAP-only engine: mail passes, the message pipeline, kept sessions and the IDLE hub."""
