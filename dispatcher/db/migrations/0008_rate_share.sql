-- Several processes (and hosts) send for one SES account: each one with mail to send marks
-- itself active for a short while, and paces itself to MaxSendRate / (active processes).
ALTER TABLE dispatcher.workers ADD COLUMN active_until timestamptz;
