"""The virtual waiting room: fair ordering, rate-based admission, signed access tokens."""
