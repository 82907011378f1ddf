"""Tickets: signed codes, QR and PDF, email delivery, and check-in at the door."""
