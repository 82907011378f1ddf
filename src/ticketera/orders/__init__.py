"""Orders: a hold turned into a purchase awaiting payment, then paid, expired, cancelled or refunded."""
