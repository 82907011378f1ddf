"""Payments through MercadoPago: checkout, notifications, reconciliation and refunds."""
