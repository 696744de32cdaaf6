use kube::core::ObjectList;
use kube::core::WatchEvent;
use serde_json::json;

use super::*;

fn credential_json(name: &str, role: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "dsql.credentials.dev/v1alpha1",
        "kind": "DsqlCredential",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": format!("uid-{name}"),
            "resourceVersion": "7",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"dsql.credentials.dev/v1alpha1\"}\n",
                "dsql.credentials.dev/rotate": "now",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "dsql.credentials.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}, "role": role},
    })
}

#[test]
fn a_list_decodes_each_item_once_and_drops_what_nothing_reads() {
    let body = json!({
        "apiVersion": "dsql.credentials.dev/v1alpha1",
        "kind": "DsqlCredentialList",
        "metadata": {"resourceVersion": "9"},
        "items": [credential_json("good", json!("reader")), credential_json("bad", json!(7))],
    })
    .to_string();
    let list: ObjectList<WatchedCredential> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.items.len(), 2, "one undecodable item does not fail the list");

    let good = list.items[0].decoded().unwrap();
    assert_eq!(good.spec.role, "reader");
    assert_eq!(good.metadata.managed_fields, None);
    let annotations = good.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["dsql.credentials.dev/rotate"],
        "kubectl's copy of the manifest is dropped, the rotate annotation kept"
    );
    assert_eq!(list.items[0].meta().uid.as_deref(), Some("uid-good"));

    let bad = list.items[1].decoded().unwrap_err();
    assert!(
        bad.error.starts_with("spec: invalid type: integer `7`"),
        "{}",
        bad.error
    );
    assert_eq!(bad.metadata.name.as_deref(), Some("bad"));
    assert_eq!(bad.metadata.managed_fields, None);
    assert_eq!(
        bad.metadata.annotations, None,
        "an unreadable object is reported on its name and uid"
    );
}

#[test]
fn of_the_annotations_only_the_rotate_one_is_kept_and_only_its_value() {
    let mut object = credential_json("good", json!("reader"));
    object["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = json!("app:dsql/DsqlCredential:x/good");
    let watched: WatchedCredential = serde_json::from_str(&object.to_string()).unwrap();
    assert_eq!(watched.meta().annotations, None, "none in the cached metadata");
    assert_eq!(watched.0.rotate_annotation.as_deref(), Some("now"));
    let decoded = watched.decoded().unwrap();
    assert_eq!(
        decoded.metadata.annotations,
        Some([("dsql.credentials.dev/rotate".to_owned(), "now".to_owned())].into())
    );

    object["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("dsql.credentials.dev/rotate");
    let watched: WatchedCredential = serde_json::from_str(&object.to_string()).unwrap();
    assert_eq!(watched.decoded().unwrap().metadata.annotations, None);
}

#[test]
fn a_watch_event_decodes_as_the_api_server_writes_it() {
    // The API server writes `type` before `object`; that order lets the object be decoded from
    // its text directly.
    let line = format!(
        "{{\"type\":\"MODIFIED\",\"object\":{}}}",
        credential_json("good", json!("reader"))
    );
    let event: WatchEvent<WatchedCredential> = serde_json::from_str(&line).unwrap();
    let WatchEvent::Modified(watched) = event else {
        panic!("a MODIFIED event");
    };
    assert_eq!(watched.decoded().unwrap().spec.role, "reader");
}

#[test]
fn clones_share_the_cached_object() {
    let watched: WatchedCredential =
        serde_json::from_str(&credential_json("good", json!("reader")).to_string()).unwrap();
    let copy = watched.clone();
    assert!(Arc::ptr_eq(&watched.0, &copy.0));
}

#[test]
fn spec_and_status_are_kept_as_the_api_servers_text_and_decode_to_the_same_credential() {
    let mut object = credential_json("good", json!("reader"));
    object["status"] = json!({
        "rotationCount": 3,
        "versionId": "00000000-0000-4000-a000-000000000003",
        "conditions": [{"type": "Ready", "status": "True", "reason": "TokenPublished", "message": "m",
                        "lastTransitionTime": "2026-11-26T01:02:03Z"}],
    });
    let text = object.to_string();
    let watched: WatchedCredential = serde_json::from_str(&text).unwrap();
    assert_eq!(watched.0.spec.as_deref(), Some(object["spec"].to_string().as_str()));
    assert_eq!(watched.0.status.as_deref(), Some(object["status"].to_string().as_str()));
    let decoded = watched.decoded().unwrap();
    let full: DsqlCredential = serde_json::from_str(&text).unwrap();
    assert_eq!(decoded.spec, full.spec);
    assert_eq!(decoded.status, full.status);
}

#[test]
fn a_value_that_is_not_an_object_fails_to_decode() {
    // Not an object: there is not even metadata to report it on, so it is an error (the list
    // fails), as with DeserializeGuard.
    let err = serde_json::from_str::<WatchedCredential>("\"text\"").unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn metadata_is_kept_whole_but_for_what_nothing_reads() {
    let mut object = credential_json("good", json!("reader"));
    object["metadata"]["labels"] = json!({"team": "a"});
    object["metadata"]["finalizers"] = json!(["dsql.credentials.dev/secret-cleanup"]);
    object["metadata"]["generation"] = json!(3);
    object["metadata"]["creationTimestamp"] = json!("2026-11-26T01:02:03Z");
    object["metadata"]["deletionTimestamp"] = json!("2026-11-26T02:02:03Z");
    object["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]);
    let full: ObjectMeta = serde_json::from_value(object["metadata"].clone()).unwrap();
    let watched: WatchedCredential = serde_json::from_str(&object.to_string()).unwrap();
    let cached = &watched.decoded().unwrap().metadata;

    let mut expected = full;
    expected.managed_fields = None;
    expected
        .annotations
        .as_mut()
        .unwrap()
        .retain(|key, _| key == "dsql.credentials.dev/rotate");
    assert_eq!(cached, &expected);
}

#[test]
fn a_bad_status_or_a_missing_spec_is_reported_with_the_metadata() {
    let mut bad_status = credential_json("s", json!("reader"));
    bad_status["status"] = json!({"rotationCount": "many"});
    let watched: WatchedCredential = serde_json::from_str(&bad_status.to_string()).unwrap();
    let invalid = watched.decoded().unwrap_err();
    assert!(
        invalid.error.starts_with("status: invalid type: string \"many\""),
        "{}",
        invalid.error
    );
    assert_eq!(invalid.metadata.uid.as_deref(), Some("uid-s"));

    let mut no_spec = credential_json("n", json!("reader"));
    no_spec.as_object_mut().unwrap().remove("spec");
    let watched: WatchedCredential = serde_json::from_str(&no_spec.to_string()).unwrap();
    assert_eq!(watched.decoded().unwrap_err().error, "missing field `spec`");

    let mut null_status = credential_json("z", json!("reader"));
    null_status["status"] = serde_json::Value::Null;
    let watched: WatchedCredential = serde_json::from_str(&null_status.to_string()).unwrap();
    assert_eq!(watched.decoded().unwrap().status, None);
}
