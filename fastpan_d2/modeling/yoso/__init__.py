"""yoso."""
