"""Load tests (locust) for the deployed or local V2 endpoints."""
