//! SASL mechanisms (RFC 4422), client and server side, as sans-IO state machines.
