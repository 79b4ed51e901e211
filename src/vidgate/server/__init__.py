"""HTTP only: app factory, routes, auth, errors, rate limits."""
