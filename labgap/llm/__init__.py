"""Talking to Claude: settings and prices, spend and budgets, and the Messages API client."""
