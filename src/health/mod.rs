//! Health checks: probes (tcp, http, dns, exec, file), the rise/fall
//! hysteresis and the scheduler that runs every check and reports to the core.

pub mod hysteresis;
