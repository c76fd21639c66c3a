export const LOCAL_CLOUD_REGION = 'us-east-1';
/** moto's default account; ElasticMQ is configured to use the same one. */
export const LOCAL_CLOUD_ACCOUNT = '123456789012';
