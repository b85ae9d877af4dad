//! What the error stream carries when an exec or attach ends: for the
//! `v4`/`v5` protocols a Kubernetes `metav1.Status` (with the exit code as a
//! cause, which is how kubectl and crictl learn it), for older ones the
//! error's text alone.

use crate::container::streams::Ended;
use serde_json::json;

/// The v4+ Status for how the process ended (`cmd` for the message).
pub fn status_json(result: &Result<Ended, String>, cmd: &[String]) -> Vec<u8> {
    let status = match result {
        Ok(Ended::Exited(0)) | Ok(Ended::ClientGone) => {
            json!({"metadata": {}, "status": "Success"})
        }
        Ok(Ended::Exited(code)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
            "details": {"causes": [{"message": message}]}
        }),
    };
    serde_json::to_vec(&status).expect("status encodes")
}

/// The pre-v4 error text; nothing when all went well.
pub fn status_text(result: &Result<Ended, String>) -> Option<Vec<u8>> {
    match result {
        Ok(Ended::Exited(0)) | Ok(Ended::ClientGone) => None,
        Ok(Ended::Exited(code)) => Some(
            format!("command terminated with non-zero exit code: exit code {code}").into_bytes(),
        ),
        Err(message) => Some(message.clone().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_causes() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let v: serde_json::Value =
            serde_json::from_slice(&status_json(&Ok(Ended::Exited(3)), &cmd)).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let ok: serde_json::Value =
            serde_json::from_slice(&status_json(&Ok(Ended::Exited(0)), &cmd)).unwrap();
        assert_eq!(ok["status"], "Success");
        assert!(status_text(&Ok(Ended::Exited(0))).is_none());
        assert!(status_text(&Err("boom".into())).is_some());
    }
}
