// A subset of twitter.json's shape, shared by the typed benchmarks: benches/json.rs and
// benches/json-typed-compare.sh (which compares with serde's derive on the same structs).
// Each consumer defines `json_struct!` before `include!`-ing this file, so one list of fields
// serves both the hand-written `FromJson` impls and the serde derives.

json_struct! {
    pub struct Twitter {
        statuses: Vec<Status>,
        search_metadata: SearchMetadata,
    }
}

json_struct! {
    pub struct Status {
        created_at: String,
        id: u64,
        id_str: String,
        text: String,
        source: String,
        truncated: bool,
        in_reply_to_status_id: Option<u64>,
        in_reply_to_user_id: Option<u64>,
        in_reply_to_screen_name: Option<String>,
        user: User,
        retweet_count: u64,
        favorite_count: u64,
        entities: Entities,
        favorited: bool,
        retweeted: bool,
        lang: String,
    }
}

json_struct! {
    pub struct User {
        id: u64,
        id_str: String,
        name: String,
        screen_name: String,
        location: String,
        description: String,
        url: Option<String>,
        protected: bool,
        followers_count: u64,
        friends_count: u64,
        listed_count: u64,
        created_at: String,
        favourites_count: u64,
        utc_offset: Option<i64>,
        time_zone: Option<String>,
        geo_enabled: bool,
        verified: bool,
        statuses_count: u64,
        lang: String,
        profile_image_url_https: String,
        default_profile: bool,
        following: bool,
    }
}

json_struct! {
    pub struct Entities {
        hashtags: Vec<Hashtag>,
        urls: Vec<Url>,
        user_mentions: Vec<UserMention>,
    }
}

json_struct! {
    pub struct Hashtag {
        text: String,
        indices: [u32; 2],
    }
}

json_struct! {
    pub struct Url {
        url: String,
        expanded_url: String,
        display_url: String,
        indices: [u32; 2],
    }
}

json_struct! {
    pub struct UserMention {
        screen_name: String,
        name: String,
        id: u64,
        id_str: String,
        indices: [u32; 2],
    }
}

json_struct! {
    pub struct SearchMetadata {
        completed_in: f64,
        max_id: u64,
        max_id_str: String,
        next_results: String,
        query: String,
        refresh_url: String,
        count: u64,
        since_id: u64,
        since_id_str: String,
    }
}
