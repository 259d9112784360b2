"""Plans and subscriptions: the data the business metrics (MRR, churn) are computed from."""
