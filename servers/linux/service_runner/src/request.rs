//! The process request for a Linux service's spec.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::spec::LinuxService;
use starina_bridge::exec::ExecRequest;

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The request `service` declares.
pub fn request(service: &LinuxService) -> ExecRequest {
    ExecRequest {
        argv: service.command.iter().map(|a| bytes(a)).collect(),
        env: service
            .env
            .iter()
            .map(|(k, v)| (bytes(k), bytes(v)))
            .collect(),
        cwd: service.workdir.map(bytes),
        user: service.user.map(bytes),
        terminal: None,
    }
}

/// The first message on the process channel.
pub fn encode(service: &LinuxService) -> Result<Vec<u8>, String> {
    request(service)
        .encode()
        .map_err(|e| format!("the spec's command cannot be sent: {e}"))
}
