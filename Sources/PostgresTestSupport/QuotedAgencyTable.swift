/// The mapping of an agency table named the way agencies name theirs: capitals and spaces that need
/// quoting, in a schema of its own, every column renamed. The tests that build such a table (each with the
/// column types, indexes and rows it needs) map it with this config file.
public enum QuotedAgencyTable {
    public static let config = """
        [table]
        schema = "Agency Data"
        name = "Outbound SMS"

        [table.columns]
        key = "MsgKey"
        message_id = "postmanId"
        campaign_id = "Campaign"
        batch_id = "batch"
        recipient = "phone"
        status = "Delivery State"
        retry_count = "retries"
        error_code = "last_error"
        created_at = "sent_at"
        updated_at = "modified"

        [otp]
        column = "otp_flag"
        """
}
