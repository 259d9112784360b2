"""The operator dashboard at /admin: static files only; its data comes from admin-only APIs."""
