"""Several SES accounts and regions: the accounts, the routes of mail to them, their state."""
