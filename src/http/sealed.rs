//! Signs the answer to every signed peer request, so that the caller can
//! tell our reply from one forged or altered on the way (see `auth`'s
//! "Signed replies").

use tide::{Body, Response, StatusCode};

use super::edge::{api_error, HEADER_REFUSED};
use crate::auth::{Guard, RequestSeal, SignedParts, HEADER_REPLY_SIGNATURE};

/// What a reply to this request must be bound to: `None` for an unsigned
/// request (an open cluster), which gets an unsigned reply as before.
pub(super) fn seal_of(parts: &SignedParts<'_>, signer: &str) -> Option<RequestSeal> {
    Some(RequestSeal {
        method: parts.method.to_string(),
        path: parts.path.to_string(),
        signer: signer.to_string(),
        nonce: parts.nonce?.to_string(),
        signature: parts.signature?.to_string(),
    })
}

/// `res` with [`HEADER_REPLY_SIGNATURE`] added: our MAC of its status,
/// protocol refusal and body, bound to `seal`. Without a keyring (it was
/// dropped by no reload, but be safe) the answer goes unsigned, and the
/// caller refuses it.
pub(super) async fn seal(guard: &Guard, seal: &RequestSeal, mut res: Response) -> Response {
    let Some(signer) = guard.signer() else {
        return res;
    };
    let typed = res.header("content-type").is_some();
    let body = res.take_body();
    let mime = body.mime().clone();
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::InternalServerError,
                "reply_unreadable",
                format!("the answer to a peer request could not be read to sign it: {e}"),
            )
            .into()
        }
    };
    let refused = res
        .header(HEADER_REFUSED)
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    let mac = signer.sign_reply(seal, u16::from(res.status()), &refused, &bytes);
    res.insert_header(HEADER_REPLY_SIGNATURE, mac);
    let mut body = Body::from_bytes(bytes);
    body.set_mime(mime);
    res.set_body(body);
    // An answer that went untyped stays so (see routes/peer.rs).
    if !typed {
        res.remove_header("content-type");
    }
    res
}
