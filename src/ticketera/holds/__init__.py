"""Seat holds: a buyer's short claim on seats or general-admission places while they check out."""
