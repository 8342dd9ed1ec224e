"""The feedback loop: SNS intake (verified), SES event parsing, recording and suppression."""
