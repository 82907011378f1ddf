"""Operations: health, readiness, maintenance commands."""
