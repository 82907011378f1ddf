"""Events, their sections and the seats (or general-admission units) they sell."""
