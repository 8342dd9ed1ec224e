"""Pure decisions and value types: no I/O library is imported below this folder."""
