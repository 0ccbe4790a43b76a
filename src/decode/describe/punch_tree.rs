//! The inverted-STUN field tree: header at `punch::field`, then the
//! attributes in order and any bytes after the declared length.

use super::*;

// ---------------------------------------------------------------------------
// Punch

pub(super) fn describe_punch(payload: &[u8], message: &PunchMessage) -> Description {
    let mut d = base(Kind::Punch, payload);
    let type_code = message.message_type.to_u16();
    let type_name = message.message_type.name();
    let declared = message.declared_length();
    let mut children = vec![
        Field::new(
            "punch.type",
            "Message Type",
            format!("0x{type_code:04x} ({type_name})"),
            json!(type_code),
            Some(pfield::TYPE),
        ),
        Field::number(
            "punch.length",
            "Message Length",
            declared.into(),
            Some(pfield::LENGTH),
        ),
        Field::new(
            "punch.cookie",
            "Cookie",
            if message.has_magic_cookie() {
                format!("{} (magic)", hex::encode(message.cookie))
            } else {
                hex::encode(message.cookie)
            },
            json!(hex::encode(message.cookie)),
            Some(pfield::COOKIE),
        ),
        Field::new(
            "punch.transaction_id",
            "Transaction ID",
            hex::encode(message.transaction_id),
            json!(hex::encode(message.transaction_id)),
            Some(pfield::TRANSACTION_ID),
        ),
    ];
    let (attr_fields, attrs_json) = attribute_fields(&message.attributes, punch::HEADER_LEN);
    children.extend(attr_fields);

    let mut detail = Map::new();
    detail.insert(
        "type".into(),
        json!(if type_name == "unknown" {
            format!("0x{type_code:04x}")
        } else {
            type_name.to_owned()
        }),
    );
    detail.insert("type_code".into(), json!(type_code));
    detail.insert("length".into(), json!(declared));
    detail.insert("cookie".into(), json!(hex::encode(message.cookie)));
    detail.insert("magic_cookie".into(), json!(message.has_magic_cookie()));
    detail.insert(
        "transaction_id".into(),
        json!(hex::encode(message.transaction_id)),
    );
    detail.insert("attributes".into(), Value::Array(attrs_json));
    detail.insert("trailing".into(), json!(hex::encode(&message.trailing)));

    if !message.trailing.is_empty() {
        let start = punch::HEADER_LEN + usize::from(declared);
        let mut trailing = Field::new(
            "punch.trailing",
            "Bytes After Declared Length",
            format!(
                "{} bytes: {}",
                message.trailing.len(),
                spaced_hex(&message.trailing)
            ),
            json!(hex::encode(&message.trailing)),
            Some(start..start.saturating_add(message.trailing.len())),
        );
        // The [py] confirm carries an address attribute here.
        if let Ok(attrs) = message.trailing_attributes() {
            let (fields, json_attrs) = attribute_fields(&attrs, start);
            trailing.children = fields;
            detail.insert("trailing_attributes".into(), Value::Array(json_attrs));
        }
        children.push(trailing);
    }

    let mut summary = if type_name == "unknown" {
        format!("type 0x{type_code:04x}")
    } else {
        type_name.to_owned()
    };
    let _ = write!(summary, " txid={}", hex::encode(message.transaction_id));
    if !message.has_magic_cookie() {
        let _ = write!(summary, " cookie={}", hex::encode(message.cookie));
    }
    if let Some(identify) = message.identify() {
        let _ = write!(summary, " identify={}", cloud::Identify(identify));
    }
    if let Some(address) = message.address() {
        let _ = write!(summary, " addr={}", address.addr_inverted());
    }
    if !message.trailing.is_empty() {
        let _ = write!(summary, " trailing={}B", message.trailing.len());
    }
    d.summary = summary;
    d.detail = Value::Object(detail);
    d.fields = vec![root("punch", PUNCH_LABEL, payload, children)];
    d
}

/// Fields and JSON of attributes laid out from datagram offset `start`.
pub(super) fn attribute_fields(attributes: &[Attribute], start: usize) -> (Vec<Field>, Vec<Value>) {
    let mut offset = start;
    let mut fields = Vec::new();
    let mut json_attrs = Vec::new();
    for attribute in attributes {
        let attr_type = attribute.attr_type();
        let name = punch::attribute_name(attr_type);
        let end = offset.saturating_add(attribute.encoded_len());
        let value_start = offset + pfield::attribute::VALUE;
        let mut attr_json = Map::new();
        attr_json.insert(
            "type".into(),
            json!(if name == "unknown" {
                format!("0x{attr_type:04x}")
            } else {
                name.to_owned()
            }),
        );
        attr_json.insert("type_code".into(), json!(attr_type));
        let mut children = vec![
            Field::new(
                "punch.attr.type",
                "Type",
                format!("0x{attr_type:04x} ({name})"),
                json!(attr_type),
                Some(pfield::at(offset, pfield::attribute::TYPE)),
            ),
            Field::number(
                "punch.attr.length",
                "Length",
                match attribute {
                    Attribute::Other { value, .. } => value.len() as u64,
                    _ => 8,
                },
                Some(pfield::at(offset, pfield::attribute::LENGTH)),
            ),
        ];
        let value = match attribute {
            Attribute::IceControlling(identify) | Attribute::IceControlled(identify) => {
                let text = cloud::Identify(*identify).to_string();
                children.push(Field::new(
                    "punch.attr.identify",
                    "Identify",
                    &text,
                    json!(text),
                    Some(pfield::at(value_start, pfield::IDENTIFY)),
                ));
                attr_json.insert("identify".into(), json!(text));
                text
            }
            Attribute::SourceAddress(address) => {
                children.extend(address_fields(address, value_start, &mut attr_json));
                address.addr_inverted().to_string()
            }
            Attribute::Other { value, padding, .. } => {
                children.push(Field::new(
                    "punch.attr.value",
                    "Value",
                    spaced_hex(value),
                    json!(hex::encode(value)),
                    Some(value_start..value_start.saturating_add(value.len())),
                ));
                if !padding.is_empty() {
                    let pad_start = value_start.saturating_add(value.len());
                    children.push(Field::new(
                        "punch.attr.padding",
                        "Padding",
                        spaced_hex(padding),
                        json!(hex::encode(padding)),
                        Some(pad_start..pad_start.saturating_add(padding.len())),
                    ));
                }
                attr_json.insert("value".into(), json!(hex::encode(value)));
                attr_json.insert("padding".into(), json!(hex::encode(padding)));
                format!("{} bytes", value.len())
            }
        };
        fields.push(
            Field::new(
                "punch.attr",
                name,
                value,
                Value::Object(attr_json.clone()),
                Some(offset..end),
            )
            .with_children(children),
        );
        json_attrs.push(Value::Object(attr_json));
        offset = end;
    }
    (fields, json_attrs)
}

/// SOURCE-ADDRESS: both readings are kept because the [py] client wrote the
/// address plain while inverting the rest (DH-P2P §5.1, §11.6).
pub(super) fn address_fields(
    address: &AddressValue,
    value_start: usize,
    json_out: &mut Map<String, Value>,
) -> Vec<Field> {
    let inverted = address.addr_inverted();
    let plain = address.addr_plain();
    json_out.insert("family".into(), json!(address.family()));
    json_out.insert("address".into(), json!(inverted.to_string()));
    json_out.insert("address_plain".into(), json!(plain.to_string()));
    vec![
        Field::number(
            "punch.attr.family",
            "Family",
            address.family().into(),
            Some(pfield::at(value_start, pfield::address::FAMILY)),
        ),
        Field::number(
            "punch.attr.port",
            "Port",
            inverted.port().into(),
            Some(pfield::at(value_start, pfield::address::PORT)),
        ),
        Field::new(
            "punch.attr.ip",
            "IPv4",
            inverted.ip().to_string(),
            json!(inverted.ip().to_string()),
            Some(pfield::at(value_start, pfield::address::IP)),
        ),
        Field::new(
            "punch.attr.address",
            "Address",
            inverted.to_string(),
            json!(inverted.to_string()),
            Some(pfield::at(value_start, pfield::address::PORT_IP)),
        ),
        Field::new(
            "punch.attr.address_plain",
            "Address (if written plain, [py])",
            plain.to_string(),
            json!(plain.to_string()),
            None,
        ),
    ]
}
