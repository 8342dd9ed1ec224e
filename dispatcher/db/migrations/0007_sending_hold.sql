-- The guard's account-wide hold (`guard.account_action = "all"`): while the one row exists, no
-- job is claimed, in any daemon; `dispatcher resume --force` deletes it.
CREATE TABLE dispatcher.sending_hold (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    reason text NOT NULL,
    held_at timestamptz NOT NULL DEFAULT now()
);
