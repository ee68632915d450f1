"""HTTP service that routes one free-text request to a team with the bundled intent model."""
