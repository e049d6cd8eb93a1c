//! HTTP on a bare socket, for what HTTP clients cannot show.

/// An HTTP answer as read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The answer's one-line JSON error.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Connects to the bridge and lets `write` drive the request side (it may
/// trickle bytes, stall, or never finish) while the answer is read.
/// `Ok(None)`: the bridge closed the connection without answering. For the
/// cases HTTP clients cannot show: they report an answer that arrives while
/// they are still writing as a broken pipe, and cannot send slowly.
pub async fn raw_exchange<W, Fut>(port: u16, write: W) -> std::io::Result<Option<RawAnswer>>
where
    W: FnOnce(tokio::net::tcp::OwnedWriteHalf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::AsyncReadExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut rd, wr) = stream.into_split();
    let reader = async move {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => return Ok(parse_answer(&buf)),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if let Some(answer) = parse_answer(&buf) {
                return Ok(Some(answer));
            }
        }
    };
    let writer = async move {
        write(wr).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        answer = reader => answer,
        () = writer => unreachable!("the writer side never finishes"),
    }
}

/// A complete answer (head and `Content-Length` body) from `buf`, if there is one.
fn parse_answer(buf: &[u8]) -> Option<RawAnswer> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    (body.len() >= length).then(|| RawAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}
