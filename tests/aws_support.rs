//! Proves the AWS test support works: moto starts and serves Secrets Manager,
//! the proxy counts calls and injects errors the SDK understands, and the
//! botocore token check accepts the SDK's tokens and rejects tampered ones.

mod support;

use std::error::Error;
use std::time::{Duration, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config as TokenConfig};
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use aws_smithy_async::time::StaticTimeSource;

use axum::http::Method;
use support::aws_proxy::{ANY_OPERATION, AwsError, AwsProxy};
use support::moto::{
    MotoServer, check_python_imports, request, test_credentials, test_python, test_sdk_config,
    test_sdk_config_with_attempts,
};
use support::token_check::{ExpectedToken, token_query_param, token_signature, verify_dsql_token};

type TestResult = Result<(), Box<dyn Error>>;

const PUT: &str = "secretsmanager.PutSecretValue";
const CREATE: &str = "secretsmanager.CreateSecret";
const DESCRIBE: &str = "secretsmanager.DescribeSecret";
const GET: &str = "secretsmanager.GetSecretValue";

async fn moto_and_proxy() -> Result<(MotoServer, AwsProxy), Box<dyn Error>> {
    let moto = MotoServer::start().await?;
    let proxy = AwsProxy::start(&moto.endpoint_url()).await?;
    Ok((moto, proxy))
}

fn secrets_client(endpoint_url: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&test_sdk_config(endpoint_url, test_credentials()))
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, name: &str) -> Result<String, Box<dyn Error>> {
    let created = client
        .create_secret()
        .name(name)
        .secret_string(r#"{"password":"initial"}"#)
        .send()
        .await?;
    Ok(created.arn().ok_or("CreateSecret returned no ARN")?.to_owned())
}

async fn put_value(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
    value: &str,
) -> Result<
    aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput,
    aws_sdk_secretsmanager::error::SdkError<PutSecretValueError, aws_sdk_secretsmanager::config::http::HttpResponse>,
> {
    client
        .put_secret_value()
        .secret_id(secret)
        .secret_string(value)
        .send()
        .await
}

#[tokio::test]
async fn moto_round_trip_through_proxy_counts_calls() -> TestResult {
    let (moto, proxy) = moto_and_proxy().await?;
    let client = secrets_client(&proxy.endpoint_url());

    let arn = create_secret(&client, "dsql/round-trip").await?;
    assert!(arn.contains(":secretsmanager:us-east-1:"), "unexpected ARN {arn}");
    let put = put_value(&client, "dsql/round-trip", r#"{"password":"second"}"#).await?;
    let version = put.version_id().ok_or("PutSecretValue returned no version")?;
    let described = client.describe_secret().secret_id("dsql/round-trip").send().await?;
    assert_eq!(described.name(), Some("dsql/round-trip"));
    let stages = described
        .version_ids_to_stages()
        .ok_or("DescribeSecret returned no versions")?;
    assert_eq!(
        stages.get(version).map(Vec::as_slice),
        Some(["AWSCURRENT".to_owned()].as_slice()),
        "the put version must be AWSCURRENT"
    );
    let value = client.get_secret_value().secret_id(&arn).send().await?;
    assert_eq!(value.secret_string(), Some(r#"{"password":"second"}"#));

    assert_eq!(proxy.calls(), vec![CREATE, PUT, DESCRIBE, GET]);
    assert_eq!(proxy.count(PUT), 1);
    assert_eq!(proxy.count(CREATE), 1);
    assert_eq!(proxy.count("secretsmanager.DeleteSecret"), 0);

    proxy.clear();
    assert!(proxy.calls().is_empty());

    // After a reset moto has forgotten the secret; its own (real, not injected)
    // error comes back through the proxy.
    moto.reset().await?;
    let err = client
        .describe_secret()
        .secret_id("dsql/round-trip")
        .send()
        .await
        .err()
        .ok_or("DescribeSecret after reset must fail")?
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "got {err:?}");
    assert_eq!(proxy.calls(), vec![DESCRIBE]);
    Ok(())
}

#[tokio::test]
async fn moto_is_reachable_directly() -> TestResult {
    let moto = MotoServer::start().await?;
    let client = secrets_client(&moto.endpoint_url());
    create_secret(&client, "dsql/direct").await?;
    let listed = client.list_secrets().send().await?;
    let names: Vec<_> = listed.secret_list().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, vec!["dsql/direct"]);
    Ok(())
}

#[tokio::test]
async fn dropping_stops_moto_and_proxy() -> TestResult {
    let (moto, proxy) = moto_and_proxy().await?;
    let moto_url = format!("{}/moto-api/", moto.endpoint_url());
    let proxy_url = format!("{}/moto-api/", proxy.endpoint_url());
    let timeout = Duration::from_secs(5);
    let (status, _) = request(Method::GET, &proxy_url, timeout).await?;
    assert!(status.is_success(), "moto via the proxy answered {status}");
    assert_eq!(proxy.calls(), vec!["GET /moto-api/"]);

    drop(proxy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        request(Method::GET, &proxy_url, timeout).await.is_err(),
        "proxy still serves"
    );
    request(Method::GET, &moto_url, timeout).await?;

    drop(moto);
    assert!(
        request(Method::GET, &moto_url, timeout).await.is_err(),
        "moto still serves"
    );
    Ok(())
}

#[test]
fn missing_python_module_fails_loudly() -> TestResult {
    let python = test_python()?;
    check_python_imports(&python, &["moto"])?;
    let message = match check_python_imports(&python, &["moto", "no_such_module_for_dsql_tests"]) {
        Ok(()) => return Err("importing a missing module must fail".into()),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("no_such_module_for_dsql_tests"), "{message}");
    assert!(message.contains("ModuleNotFoundError"), "{message}");
    assert!(message.contains("scripts/test.sh"), "{message}");
    Ok(())
}

#[tokio::test]
async fn injected_errors_map_to_sdk_error_codes_and_then_clear() -> TestResult {
    let (_moto, proxy) = moto_and_proxy().await?;
    let client = secrets_client(&proxy.endpoint_url());
    create_secret(&client, "dsql/faults").await?;

    for (round, error) in AwsError::all().into_iter().enumerate() {
        proxy.clear();
        proxy.inject_error(PUT, error.clone(), 2);
        assert_eq!(proxy.pending_errors(PUT), 2);

        for attempt in 0..2 {
            let sdk_err = put_value(&client, "dsql/faults", "x")
                .await
                .err()
                .ok_or_else(|| format!("{error:?}: call {attempt} must fail"))?;
            let status = sdk_err
                .raw_response()
                .map(|r| r.status().as_u16())
                .ok_or_else(|| format!("{error:?}: no raw response: {sdk_err:?}"))?;
            assert_eq!(status, error.status(), "{error:?}: HTTP status");
            let service_err = sdk_err.into_service_error();
            assert_eq!(service_err.meta().code(), error.code(), "{error:?}: {service_err:?}");
            match error {
                AwsError::ThrottlingException => {
                    assert_eq!(service_err.meta().message(), Some("Rate exceeded"));
                }
                AwsError::AccessDeniedException => {
                    let message = service_err.meta().message().unwrap_or_default();
                    assert!(
                        message.contains("not authorized to perform: secretsmanager:PutSecretValue"),
                        "{message}"
                    );
                }
                AwsError::InternalServiceError => assert!(
                    matches!(service_err, PutSecretValueError::InternalServiceError(_)),
                    "{service_err:?}"
                ),
                AwsError::ResourceNotFoundException => {
                    assert!(service_err.is_resource_not_found_exception(), "{service_err:?}")
                }
                AwsError::MalformedInternalError => assert!(
                    service_err.meta().code().is_none() && !service_err.is_internal_service_error(),
                    "an unparseable 500 is an unhandled error: {service_err:?}"
                ),
                AwsError::TruncatedHugeSuccess => assert!(
                    service_err.meta().code().is_none(),
                    "an unparseable 200 is an unhandled error: {service_err:?}"
                ),
                AwsError::Custom { .. } | AwsError::StsAccessDenied => {}
            }
            // Other operations are untouched while PutSecretValue is failing.
            client.describe_secret().secret_id("dsql/faults").send().await?;
        }

        assert_eq!(proxy.pending_errors(PUT), 0, "{error:?}: faults used up");
        let ok = put_value(&client, "dsql/faults", &format!("value-{round}")).await?;
        assert!(
            ok.version_id().is_some(),
            "{error:?}: call after the faults must succeed"
        );
        assert_eq!(proxy.count(PUT), 3, "{error:?}: every call is counted");
        assert_eq!(proxy.count(DESCRIBE), 2);
    }

    // The last successful put really reached moto.
    let value = client.get_secret_value().secret_id("dsql/faults").send().await?;
    assert_eq!(
        value.secret_string().map(str::to_owned),
        Some(format!("value-{}", AwsError::all().len() - 1))
    );
    Ok(())
}

/// A 400 ValidationException with the message "nope".
fn validation_exception() -> AwsError {
    AwsError::Custom {
        status: 400,
        code: "ValidationException".to_owned(),
        message: "nope".to_owned(),
    }
}

#[tokio::test]
async fn faults_queue_in_order_and_clear_errors_drops_them() -> TestResult {
    let (_moto, proxy) = moto_and_proxy().await?;
    let client = secrets_client(&proxy.endpoint_url());
    create_secret(&client, "dsql/queue").await?;

    proxy.inject_error(PUT, AwsError::ThrottlingException, 1);
    proxy.inject_error(PUT, AwsError::AccessDeniedException, 1);
    let codes = [
        put_value(&client, "dsql/queue", "a")
            .await
            .err()
            .map(|e| e.into_service_error()),
        put_value(&client, "dsql/queue", "b")
            .await
            .err()
            .map(|e| e.into_service_error()),
    ];
    assert_eq!(
        codes[0].as_ref().and_then(|e| e.meta().code()),
        Some("ThrottlingException")
    );
    assert_eq!(
        codes[1].as_ref().and_then(|e| e.meta().code()),
        Some("AccessDeniedException")
    );
    put_value(&client, "dsql/queue", "c").await?;

    proxy.inject_error(PUT, AwsError::InternalServiceError, 5);
    proxy.inject_error(ANY_OPERATION, validation_exception(), 1);
    proxy.clear_errors();
    assert_eq!(proxy.pending_errors(PUT), 0);
    put_value(&client, "dsql/queue", "d").await?;
    client.describe_secret().secret_id("dsql/queue").send().await?;

    // A wildcard fault hits whichever operation comes next.
    proxy.inject_error(ANY_OPERATION, validation_exception(), 1);
    let err = client
        .describe_secret()
        .secret_id("dsql/queue")
        .send()
        .await
        .err()
        .ok_or("wildcard fault must fail DescribeSecret")?
        .into_service_error();
    assert_eq!(err.meta().code(), Some("ValidationException"));
    assert_eq!(err.meta().message(), Some("nope"));
    client.describe_secret().secret_id("dsql/queue").send().await?;
    Ok(())
}

#[tokio::test]
async fn sdk_retries_injected_throttling_but_not_access_denied() -> TestResult {
    let (_moto, proxy) = moto_and_proxy().await?;
    let config = test_sdk_config_with_attempts(&proxy.endpoint_url(), test_credentials(), 3);
    let client = aws_sdk_secretsmanager::Client::new(&config);
    create_secret(&client, "dsql/retry").await?;

    proxy.clear();
    proxy.inject_error(PUT, AwsError::ThrottlingException, 2);
    put_value(&client, "dsql/retry", "after-throttling").await?;
    assert_eq!(proxy.count(PUT), 3, "two throttled attempts, then success");

    proxy.clear();
    proxy.inject_error(PUT, AwsError::InternalServiceError, 1);
    put_value(&client, "dsql/retry", "after-500").await?;
    assert_eq!(proxy.count(PUT), 2, "a 500 is retried");

    proxy.clear();
    proxy.inject_error(PUT, AwsError::AccessDeniedException, 1);
    let err = put_value(&client, "dsql/retry", "denied")
        .await
        .err()
        .ok_or("AccessDenied must not be retried into success")?;
    assert_eq!(err.into_service_error().meta().code(), Some("AccessDeniedException"));
    assert_eq!(proxy.count(PUT), 1, "AccessDenied is not retried");
    Ok(())
}

// ---------------------------------------------------------------- tokens

const HOST: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
/// 2026-01-01T00:04:05Z — seconds that are not zero catch truncation bugs.
const SIGNING_TIME: u64 = 1_767_225_845;
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDx+Q7k3Vq\
    Y2y5fakeFAKEfake/9aZ0pLm1+bcd8R7WZqAiAq1w2e3r4t5y6u7i8o9p0+ZlXn==";

fn token_sdk_config(creds: &Credentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(creds.clone()))
        .time_source(StaticTimeSource::new(UNIX_EPOCH + Duration::from_secs(SIGNING_TIME)))
        .build()
}

async fn sdk_token(creds: &Credentials, admin: bool) -> Result<String, Box<dyn Error>> {
    let generator = AuthTokenGenerator::new(
        TokenConfig::builder()
            .hostname(HOST)
            .region(Region::new("us-east-1"))
            .expires_in(3600)
            .build()
            .map_err(|e| format!("token config: {e}"))?,
    );
    let config = token_sdk_config(creds);
    let token = if admin {
        generator.db_connect_admin_auth_token(&config).await
    } else {
        generator.db_connect_auth_token(&config).await
    }
    .map_err(|e| format!("token generation: {e}"))?;
    Ok(token.as_str().to_owned())
}

fn creds_with_session() -> Credentials {
    Credentials::new(
        "ASIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some(SESSION_TOKEN.to_owned()),
        None,
        "dsql-operator-tests",
    )
}

#[tokio::test]
async fn sdk_tokens_verify_with_botocore() -> TestResult {
    for creds in [test_credentials(), creds_with_session()] {
        for admin in [true, false] {
            let token = sdk_token(&creds, admin).await?;
            let case = format!("admin={admin} session={}", creds.session_token().is_some());
            let expected = ExpectedToken::new(HOST, "us-east-1", admin, &creds);
            verify_dsql_token(&token, &expected).map_err(|e| format!("{case}: {e}"))?;
            // The same token with a scheme in front is still the same token.
            verify_dsql_token(&format!("https://{token}"), &expected)
                .map_err(|e| format!("{case} with https://: {e}"))?;

            assert!(token.starts_with(&format!("{HOST}/?Action=DbConnect")), "{case}");
            assert_eq!(token_query_param(&token, "X-Amz-Expires").as_deref(), Some("3600"));
            assert_eq!(
                token_query_param(&token, "X-Amz-Date").as_deref(),
                Some("20260101T000405Z")
            );
            assert_eq!(
                token_query_param(&token, "Action").as_deref(),
                Some(if admin { "DbConnectAdmin" } else { "DbConnect" })
            );
            assert_eq!(
                token_query_param(&token, "X-Amz-Security-Token").as_deref(),
                creds.session_token(),
                "{case}"
            );
            let signature = token_signature(&token).ok_or("no signature")?;
            assert_eq!(signature.len(), 64, "{case}");
            assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()), "{case}");
            assert!(token.contains(&signature));
        }
    }
    Ok(())
}

fn assert_rejected(result: Result<(), String>, must_mention: &str, secret: &str) -> TestResult {
    let message = match result {
        Ok(()) => return Err(format!("verification passed; expected \"{must_mention}\"").into()),
        Err(message) => message,
    };
    assert!(
        message.contains(must_mention),
        "expected \"{must_mention}\" in: {message}"
    );
    assert!(!message.contains(secret), "the report leaks the signature: {message}");
    Ok(())
}

#[tokio::test]
async fn tampered_tokens_fail_verification() -> TestResult {
    let creds = creds_with_session();
    let token = sdk_token(&creds, true).await?;
    let signature = token_signature(&token).ok_or("no signature")?;
    let admin = ExpectedToken::new(HOST, "us-east-1", true, &creds);
    verify_dsql_token(&token, &admin)?;

    // One signature character changed.
    let mut forged = signature.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged)?;
    let tampered = token.replace(&signature, &forged);
    let result = verify_dsql_token(&tampered, &admin);
    assert_eq!(result.as_ref().err().map(String::as_str), Some("signature differs"));
    assert_rejected(result, "signature differs", &signature)?;

    // A different lifetime with the original signature.
    let tampered = token.replace("X-Amz-Expires=3600", "X-Amz-Expires=900");
    assert_ne!(tampered, token);
    assert_rejected(verify_dsql_token(&tampered, &admin), "signature differs", &signature)?;

    // A different signing time with the original signature.
    let tampered = token.replace("X-Amz-Date=20260101T000405Z", "X-Amz-Date=20260101T000406Z");
    assert_ne!(tampered, token);
    assert_rejected(verify_dsql_token(&tampered, &admin), "signature differs", &signature)?;

    // Admin token checked as a non-admin one, and the action rewritten.
    let not_admin = ExpectedToken {
        admin: false,
        ..admin.clone()
    };
    assert_rejected(
        verify_dsql_token(&token, &not_admin),
        "query parameter Action differs",
        &signature,
    )?;
    let tampered = token.replace("Action=DbConnectAdmin", "Action=DbConnect");
    assert_rejected(
        verify_dsql_token(&tampered, &admin),
        "query parameter Action differs",
        &signature,
    )?;
    let user_token = sdk_token(&creds, false).await?;
    verify_dsql_token(&user_token, &not_admin)?;
    assert_rejected(
        verify_dsql_token(&user_token, &admin),
        "query parameter Action differs",
        &signature,
    )?;

    // Other credentials, host or region.
    let other_secret = ExpectedToken {
        secret_access_key: "another-secret".to_owned(),
        ..admin.clone()
    };
    let result = verify_dsql_token(&token, &other_secret);
    assert_eq!(result.as_ref().err().map(String::as_str), Some("signature differs"));
    let others = [
        (
            ExpectedToken {
                access_key_id: "ASIAOTHER".to_owned(),
                ..admin.clone()
            },
            "query parameter X-Amz-Credential differs",
        ),
        (
            ExpectedToken {
                session_token: None,
                ..admin.clone()
            },
            "unexpected query parameter X-Amz-Security-Token",
        ),
        (
            ExpectedToken {
                hostname: "zyxwvutsrqponmlkjihgfedcba.dsql.us-east-1.on.aws".to_owned(),
                ..admin.clone()
            },
            "hostname differs",
        ),
        (
            ExpectedToken {
                region: "us-west-2".to_owned(),
                ..admin.clone()
            },
            "query parameter X-Amz-Credential differs",
        ),
    ];
    for (other, must_mention) in &others {
        assert_rejected(verify_dsql_token(&token, other), must_mention, &signature)?;
    }

    // Parameter order carries no meaning in SigV4 (the canonical query is
    // sorted), so a reordered token passes; a re-encoded one does not.
    let (base, query) = token.split_once('?').ok_or("token has no query")?;
    let mut pieces: Vec<&str> = query.split('&').collect();
    pieces.rotate_left(1);
    verify_dsql_token(&format!("{base}?{}", pieces.join("&")), &admin)?;
    let tampered = token.replacen("%2F", "/", 1);
    assert_ne!(tampered, token);
    assert_rejected(
        verify_dsql_token(&tampered, &admin),
        "query parameter X-Amz-Credential encoding differs",
        &signature,
    )?;

    // Not a token at all.
    assert_rejected(verify_dsql_token("not-a-token", &admin), "X-Amz-Date", &signature)?;
    Ok(())
}
