"""sample_app: one web app, six session strategies, one HTTP contract.

The strategy is chosen with SESSION_STRATEGY (see settings.py); every strategy answers the same HTTP contract
(see app.py). The app knows its environment, Redis, PostgreSQL and its peers' URLs, nothing about how it is deployed.
"""
