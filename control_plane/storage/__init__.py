"""Durable storage of pipelines, versions, runs and their history, behind a repository interface."""
